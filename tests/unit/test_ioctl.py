"""Linux ioctl numbers per architecture, against the values each arch's headers give."""

from __future__ import annotations

import pytest

from tunflow.netconfig.ioctl import linux_layout

T = ord("T")


@pytest.mark.parametrize(
    ("machine", "tunsetiff", "tungetfeatures"),
    [
        # asm-generic/ioctl.h: _IOC_WRITE 1, _IOC_READ 2, 14 size bits
        ("x86_64", 0x400454CA, 0x800454CF),
        ("aarch64", 0x400454CA, 0x800454CF),
        ("riscv64", 0x400454CA, 0x800454CF),
        # arch/{mips,powerpc,sparc,alpha}: _IOC_NONE 1, _IOC_READ 2, _IOC_WRITE 4, 13 size bits
        ("mips64", 0x800454CA, 0x400454CF),
        ("ppc64le", 0x800454CA, 0x400454CF),
        ("sparc64", 0x800454CA, 0x400454CF),
        ("alpha", 0x800454CA, 0x400454CF),
        # arch/parisc: _IOC_WRITE 2, _IOC_READ 1 (swapped), otherwise generic
        ("parisc", 0x800454CA, 0x400454CF),
        ("parisc64", 0x800454CA, 0x400454CF),
    ],
)
def test_tun_ioctl_numbers_per_architecture(
    machine: str, tunsetiff: int, tungetfeatures: int
) -> None:
    layout = linux_layout(machine)
    assert layout.iow(T, 202, 4) == tunsetiff  # TUNSETIFF = _IOW('T', 202, int)
    assert layout.ior(T, 207, 4) == tungetfeatures  # TUNGETFEATURES = _IOR('T', 207, unsigned)


def test_io_without_direction_bits_where_the_arch_has_none() -> None:
    assert linux_layout("x86_64").io(T, 1) == 0x5401
    assert linux_layout("alpha").io(T, 1) == 0x20005401  # alpha's _IOC_NONE is 1
    assert linux_layout("parisc").io(T, 1) == 0x5401
