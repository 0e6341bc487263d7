"""The search package's error hierarchy. Messages name the bad value and say what to do."""


class SearchError(Exception):
    """Base class for every error raised by the search package."""


class SourceError(SearchError):
    """A knowledge source cannot be read at all (missing path, empty source)."""


class LoadError(SearchError):
    """One document cannot be loaded; the run skips it and reports the reason."""


class IndexStoreError(SearchError):
    """The index cannot be opened, read or written."""


class ModelError(SearchError):
    """A model (embedder or reranker) cannot be found or loaded."""
