"""VM leases: at most one holder per VM across processes (local flock) and runners (PabotLib, expiring)."""

from ATPLibrary.pool.leases import Lease, LeaseStore
from ATPLibrary.pool.pool import Backend, PoolSettings, VmLease, VmPool, make_pool
from ATPLibrary.pool.shared import LeaseLostError, SharedLeaseStore

__all__ = [
    "Backend",
    "Lease",
    "LeaseLostError",
    "LeaseStore",
    "PoolSettings",
    "SharedLeaseStore",
    "VmLease",
    "VmPool",
    "make_pool",
]
