"""Virtio-serial channels of VMs through libvirt streams (``virDomainOpenChannel``); no Robot Framework here."""

from ATPLibrary.channels.buffer import ChannelBuffer
from ATPLibrary.channels.channel import ChannelInfo, ChannelMode, VirtioChannel, domain_channels, open_channel

__all__ = ["ChannelBuffer", "ChannelInfo", "ChannelMode", "VirtioChannel", "domain_channels", "open_channel"]
