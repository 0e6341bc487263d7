"""What the answer pipeline says besides the passages and the model's answer: the extractive
answer's intro, the no-evidence replies, and the notices that explain a fallback."""

NOTHING_FOUND_TEXT = "I found nothing in the knowledge base about this."
NO_EVIDENCE_TEXT = (
    "The knowledge base does not seem to cover this. These are the nearest sources I found; "
    "they may not answer the question."
)
EXTRACTIVE_INTRO = "Here are the most relevant passages from the knowledge base:"
# When the best passage only just clears the evidence threshold (answer.strong_similarity).
WEAK_EXTRACTIVE_INTRO = ("The knowledge base may not cover this. These are the nearest passages "
                         "I found; check that they answer the question:")
LLM_UNAVAILABLE_NOTICE = (
    "The language model is unavailable right now; here are the most relevant passages."
)
LLM_EMPTY_NOTICE = "The language model gave no answer; here are the most relevant passages."
LLM_SLOW_NOTICE = "The language model was too slow; here are the most relevant passages."
LLM_CUT_NOTICE = "The language model's answer was cut off; here are the most relevant passages."
UNCITED_NOTICE = (
    "This answer cites none of the knowledge base's sources; check it before relying on it."
)

