"""ioctl request numbers computed from the ``_IO``/``_IOR``/``_IOW``/``_IOWR`` macros, sans-I/O.

Tables of magic numbers copied from one architecture are how other libraries get ioctls wrong
on the next one; here each number is computed from its macro with the direction and size bits
of the target :class:`IoctlLayout`. Linux's layout differs between architectures (``mips``,
``powerpc``, ``sparc`` and ``alpha`` have 13 size bits and 3 direction bits; ``parisc`` swaps
the read and write bits); the BSDs and Darwin share one layout (``sys/ioccom.h``).

Example:
    >>> hex(LINUX.iow(ord("T"), 202, 4))           # TUNSETIFF = _IOW('T', 202, int)
    '0x400454ca'
    >>> hex(BSD.iowr(ord("i"), 91, 32))           # SIOCGIFFLAGS-style _IOWR('i', 91, ...)
    '0xc020695b'
"""

from __future__ import annotations

import attrs

__all__ = [
    "IoctlLayout",
    "LINUX",
    "LINUX_MIPS_PPC_SPARC",
    "LINUX_PARISC",
    "BSD",
    "linux_layout",
]


@attrs.frozen
class IoctlLayout:
    """How an OS packs direction, size, type and number into an ioctl request."""

    #: bits for the number and the type ("group") fields
    nr_bits: int
    type_bits: int
    #: bits for the size field
    size_bits: int
    #: the direction values
    dir_none: int
    dir_write: int
    dir_read: int
    #: shift of the direction field; ``None`` means "after the size field"
    dir_shift: int | None = None

    def ioc(self, direction: int, type_: int, nr: int, size: int) -> int:
        """``_IOC(direction, type, nr, size)``."""
        if size >= 1 << self.size_bits:
            raise ValueError(f"ioctl argument size {size} does not fit in {self.size_bits} bits")
        nr_shift = 0
        type_shift = nr_shift + self.nr_bits
        size_shift = type_shift + self.type_bits
        dir_shift = self.dir_shift if self.dir_shift is not None else size_shift + self.size_bits
        return (
            (direction << dir_shift)
            | (size << size_shift)
            | (type_ << type_shift)
            | (nr << nr_shift)
        )

    def io(self, type_: int, nr: int) -> int:
        """``_IO(type, nr)``."""
        return self.ioc(self.dir_none, type_, nr, 0)

    def ior(self, type_: int, nr: int, size: int) -> int:
        """``_IOR(type, nr, size)`` (the kernel writes the argument)."""
        return self.ioc(self.dir_read, type_, nr, size)

    def iow(self, type_: int, nr: int, size: int) -> int:
        """``_IOW(type, nr, size)`` (the kernel reads the argument)."""
        return self.ioc(self.dir_write, type_, nr, size)

    def iowr(self, type_: int, nr: int, size: int) -> int:
        """``_IOWR(type, nr, size)``."""
        return self.ioc(self.dir_read | self.dir_write, type_, nr, size)


#: ``include/uapi/asm-generic/ioctl.h``: x86, arm, arm64, riscv, s390, loongarch…
LINUX = IoctlLayout(nr_bits=8, type_bits=8, size_bits=14, dir_none=0, dir_write=1, dir_read=2)
#: ``arch/{mips,powerpc,sparc,alpha}/include/uapi/asm/ioctl.h``
LINUX_MIPS_PPC_SPARC = IoctlLayout(
    nr_bits=8, type_bits=8, size_bits=13, dir_none=1, dir_write=4, dir_read=2
)
#: ``arch/parisc/include/uapi/asm/ioctl.h``: the generic layout with ``_IOC_WRITE`` 2 and
#: ``_IOC_READ`` 1
LINUX_PARISC = IoctlLayout(
    nr_bits=8, type_bits=8, size_bits=14, dir_none=0, dir_write=2, dir_read=1
)
#: ``sys/ioccom.h`` on Darwin, FreeBSD, OpenBSD and NetBSD: IOC_VOID 0x20000000,
#: IOC_OUT 0x40000000, IOC_IN 0x80000000, IOCPARM_MASK 0x1fff.
BSD = IoctlLayout(
    nr_bits=8, type_bits=8, size_bits=13, dir_none=1, dir_write=4, dir_read=2, dir_shift=29
)


def linux_layout(machine: str) -> IoctlLayout:
    """The Linux layout for a ``uname -m`` machine string."""
    m = machine.lower()
    if m.startswith(("mips", "ppc", "powerpc", "sparc", "alpha")):
        return LINUX_MIPS_PPC_SPARC
    if m.startswith("parisc"):
        return LINUX_PARISC
    return LINUX
