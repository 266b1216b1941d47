"""Where bytes live: the on-disk layout (from integer ids only) and atomic writes."""

from server.store.local import MediaStore, UploadFile, atomic_write, fsync_dir, temp_path_for

__all__ = ["MediaStore", "UploadFile", "atomic_write", "fsync_dir", "temp_path_for"]
