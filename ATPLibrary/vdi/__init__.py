"""OCloudView VDI platform: a spec-conformant HTTP client (plain Python, no Robot Framework import)."""

from ATPLibrary.vdi.client import VdiClient, md5_password

__all__ = ["VdiClient", "md5_password"]
