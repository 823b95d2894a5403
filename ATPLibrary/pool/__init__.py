"""VM leases: at most one holder per VM across every process on this machine."""

from ATPLibrary.pool.leases import Lease, LeaseStore

__all__ = ["Lease", "LeaseStore"]
