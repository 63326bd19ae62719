"""Dataset checks with clear errors, and converters from raw formats to RecBole atomic files."""

from recbole_rag.data.checks import check_dataset_files, load_dataset, read_atomic_header

__all__ = ["check_dataset_files", "load_dataset", "read_atomic_header"]
