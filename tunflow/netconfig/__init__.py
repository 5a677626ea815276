"""Sans-I/O codecs for operating-system configuration: ioctl numbers, ifreq structures, rtnetlink.

Nothing here makes a system call; the platform backends send what these modules build.
"""
