"""Robot Framework keyword classes (thin: argument conversion, logging, one client call)."""

from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.keywords.guest import GuestKeywords
from ATPLibrary.keywords.hosts import HostKeywords
from ATPLibrary.keywords.keyboard import KeyboardKeywords
from ATPLibrary.keywords.library import LibraryKeywords
from ATPLibrary.keywords.mouse import MouseKeywords
from ATPLibrary.keywords.pool import PoolKeywords
from ATPLibrary.keywords.screen import ScreenKeywords

__all__ = [
    "GuestKeywords",
    "HostKeywords",
    "KeyboardKeywords",
    "LibraryContext",
    "LibraryKeywords",
    "MouseKeywords",
    "PoolKeywords",
    "ScreenKeywords",
]
