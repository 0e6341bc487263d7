"""Index backends behind one protocol (see ``base.SearchIndex``)."""

from search.index.base import IndexWriter, SearchIndex

__all__ = ["IndexWriter", "SearchIndex"]
