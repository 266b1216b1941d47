"""Where bytes live: media objects (a local tree or S3), their keys, and this machine's scratch files."""

from server.store.local import UploadFile, fsync_dir, temp_path_for
from server.store.media import MediaStore

__all__ = ["MediaStore", "UploadFile", "fsync_dir", "temp_path_for"]
