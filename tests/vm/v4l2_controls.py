#!/usr/bin/env python3
"""Lists a V4L2 device's controls with their driver names (VIDIOC_QUERYCTRL).

v4l2-ctl prints names lowered and with '_' for spaces ("inject_fatal_streaming_error");
programs using the V4L2 API (the v4l crate) see the driver's own ("Inject Fatal
Streaming Error"). Usage: v4l2_controls.py [/dev/videoN]
"""
import fcntl
import os
import struct
import sys

# struct v4l2_queryctrl: id, type, name[32], minimum, maximum, step, default_value, flags, reserved[2]
QUERYCTRL = struct.Struct("=II32siiiiI8x")
VIDIOC_QUERYCTRL = 0xC0000000 | (QUERYCTRL.size << 16) | (ord("V") << 8) | 36
NEXT_CTRL = 0x80000000
NEXT_COMPOUND = 0x40000000
FLAG_DISABLED = 0x0001
TYPES = {1: "int", 2: "bool", 3: "menu", 4: "button", 5: "int64", 6: "class",
         7: "string", 8: "bitmask", 9: "intmenu", 0x100: "u8", 0x101: "u16", 0x102: "u32"}


def controls(fd):
    cid = 0
    while True:
        buf = bytearray(QUERYCTRL.pack(cid | NEXT_CTRL | NEXT_COMPOUND, 0, b"", 0, 0, 0, 0, 0))
        try:
            fcntl.ioctl(fd, VIDIOC_QUERYCTRL, buf)
        except OSError:
            return
        cid, ctype, name, lo, hi, step, default, flags = QUERYCTRL.unpack(buf)
        yield cid, ctype, name.split(b"\0", 1)[0].decode(), lo, hi, step, default, flags


def main():
    dev = sys.argv[1] if len(sys.argv) > 1 else "/dev/video0"
    fd = os.open(dev, os.O_RDWR)
    try:
        for cid, ctype, name, lo, hi, step, default, flags in controls(fd):
            kind = TYPES.get(ctype, str(ctype))
            if kind == "class":
                print(f"{name}")
                continue
            extra = " disabled" if flags & FLAG_DISABLED else ""
            print(f"  0x{cid:08x} {kind:8} {name!r} min={lo} max={hi} step={step} default={default}{extra}")
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
