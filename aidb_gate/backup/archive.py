"""archive: the one strict reader for every tar archive the gate reads (Qdrant snapshots).

Used by `verify` (and so by restore's pre-check) and, copied into the Qdrant-API recipe image at
build time as `archive.py`, by that image's snapshot upload. It imports the standard library only.

Guarantees of `scan(path)`:

- It returns, or raises `ArchiveError` with a one-line message (names from the archive escaped),
  in time linear in the file's size and memory bounded by `Limits`: never a hang, never another
  exception (a file that cannot be opened raises OSError).
- Compressed files are recognised by their magic bytes (gzip, bzip2, xz, zstd, lz4, compress) and
  refused without decompressing a byte. Qdrant writes a snapshot as a plain tar and reads one
  without decompressing (`tar::Archive::new(BufReader::new(file))` in qdrant/qdrant's
  lib/segment/src/common/validate_snapshot_archive.rs), so a compressed snapshot would never
  restore, and refusing it leaves no decompression bomb to bound.
- Headers are read one member at a time. Before the next header is read, the member's sizes are
  checked and the archive position must have moved forward and stay inside the file: the
  negative-size loop of tarfile.getmembers() (CVE-2025-8194, unpatched in Python 3.11.7) cannot
  happen. The bytes read for one member's headers (GNU long names, pax records, sparse maps) are
  capped, so a header cannot make the reader allocate or loop beyond that cap.
- Members are directories and regular files (GNU sparse ones included: old GNU and pax 0.0,
  0.1, 1.0); links, devices, FIFOs and any other type are refused. Names are plain relative
  paths in UTF-8 (a name that is not UTF-8 is a format error), no `..`, no empty part, no
  backslash or NUL, at most 255 bytes a part, 4096 in all and 64 parts deep, each name once, no
  file where another member needs a folder.
- Sizes: at most `Limits.members` members, each at most `Limits.member_bytes` long (its
  apparent size), and the apparent sizes together exceed the archive's own size by at most
  `Limits.expansion_bytes` (holes of sparse files are the only expansion a plain tar has).
  A sparse map has at most `Limits.sparse_entries` entries, sorted, non-overlapping, inside the
  member's real size, and its data fits in the member's stored bytes.
- The archive ends with the end-of-archive marker right after its last member: a file cut at a
  member boundary, or with a damaged header (which tarfile silently treats as the end), is refused.

`extract(path, target, members)` writes what `scan` returned under `target` and nowhere else
(files opened O_EXCL, sparse files keep their holes).
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import unicodedata
from dataclasses import dataclass
from typing import Any, BinaryIO

BLOCK = tarfile.BLOCKSIZE  # 512
COPY_CHUNK = 1 << 20

#: Magic bytes at offset 0 of compressed files.
COMPRESSION_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x1f\x9d", "compress (.Z)"),
)


class ArchiveError(ValueError):
    """The file is not an archive the strict reader accepts; the message is one line that says why."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what an archive may declare. The defaults are far beyond any Qdrant collection
    snapshot (a few thousand files) and far below what would exhaust a host."""

    members: int = 200_000
    member_bytes: int = 1 << 40  # 1 TiB apparent size of one file
    expansion_bytes: int = 1 << 38  # 256 GiB of holes in all
    sparse_entries: int = 1 << 20
    header_bytes: int = 4 << 20  # GNU long names, pax records and sparse maps of one member
    name_bytes: int = 255
    path_bytes: int = 4096
    depth: int = 64  # parts of one name: the folder checks walk them, so they are bounded too


LIMITS = Limits()


@dataclass(frozen=True)
class Member:
    """One checked member: `name` is its clean relative path ("a/b", never empty)."""

    name: str
    is_dir: bool
    size: int  # apparent size: what extraction writes (a sparse file's real size)
    offset_data: int  # where its stored data starts in the archive
    sparse: tuple[tuple[int, int], ...] | None  # (offset, length) data regions of a sparse file


def shown(text: str, limit: int = 120) -> str:
    """`text` (a name from an archive) safe to print on one line: bytes that were not UTF-8
    (surrogate escapes) as \\xNN, control, format (bidi), separator and other unprintable
    characters as \\uNNNN, clipped to `limit` characters, in quotes."""
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "'" + "".join(out) + ("...'" if len(text) > limit else "'")


def compression(head: bytes) -> str | None:
    """The compression whose magic bytes `head` (a file's first bytes) starts with, or None."""
    for magic, kind in COMPRESSION_MAGIC:
        if head.startswith(magic):
            return kind
    return None


def looks_like_tar(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with a valid (checksummed) plain tar header: one 512-byte read,
    nothing decompressed, no member list. A cheap filter, not a verdict: `scan` decides."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(BLOCK)
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except (OSError, tarfile.TarError, ValueError, OverflowError):
        return False
    return compression(head) is None


class _HeaderBudget:
    """The archive file as tarfile reads it: a read of a negative count (a negative size in a
    header, which would read to the end), or more header bytes for one member than the budget,
    raises ArchiveError instead of allocating or looping."""

    def __init__(self, raw: BinaryIO, budget: int):
        self.raw = raw
        self.budget = budget
        self.left = budget

    def renew(self) -> None:
        self.left = self.budget

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ArchiveError("a header declares a negative size")
        self.left -= n
        if self.left < 0:
            raise ArchiveError(f"the headers of one member (long names, pax records, sparse map) take more than "
                               f"{self.budget} bytes")
        return self.raw.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if offset < 0 and whence == os.SEEK_SET:
            raise ArchiveError("a header declares a negative size")
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


#: Longest run of digits allowed in a pax header: tarfile's `\\d+ hdrcharset=` search is quadratic
#: in the length of a digit run (CVE-2024-6232, unpatched in Python 3.11.7).
MAX_PAX_DIGITS = 32
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_PAX_DIGITS + 1))


def _check_pax_records(buf: bytes, size: int) -> None:
    """A pax header's data is `LEN KEYWORD=VALUE\\n` records, each as long as it says, then zero
    padding; no digit run is long. Checked in one pass, so tarfile's own regular expressions
    (which backtrack on malformed input) only ever see well-formed, short-numbered records."""
    pos = 0
    while pos < size:
        space = buf.find(b" ", pos, min(size, pos + 21))
        if space <= pos or not buf[pos:space].isdigit():
            raise ArchiveError(f"a pax header holds a malformed record at byte {pos}")
        end = pos + int(buf[pos:space])
        if end > size or end <= space + 2 or buf[end - 1] != 0x0A or buf.find(b"=", space + 2, end) < 0:
            raise ArchiveError(f"a pax header holds a malformed record at byte {pos}")
        pos = end
    if buf[size:].count(0) != len(buf) - size:
        raise ArchiveError("a pax header is followed by padding that is not zero")
    if _LONG_DIGITS.search(buf):
        raise ArchiveError(f"a pax header holds a number longer than {MAX_PAX_DIGITS} digits")


class _StrictInfo(tarfile.TarInfo):
    """tarfile's member header, with the two header parsers that misbehave on crafted input
    replaced or guarded: pax records are checked before tarfile's regular expressions run, and
    a pax (1.0) sparse map is read in linear time with its numbers checked."""

    sparse_entries = LIMITS.sparse_entries

    def _proc_pax(self, tarfile: Any) -> Any:
        if self.size < 0:
            raise ArchiveError("a pax header declares a negative size")
        start = tarfile.fileobj.tell()
        # TarInfo._block and TarInfo._proc_pax are tarfile's private parser, absent from typeshed.
        _check_pax_records(tarfile.fileobj.read(self._block(self.size)), self.size)  # type: ignore[attr-defined]
        tarfile.fileobj.seek(start)
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_gnusparse_10(self, next: Any, pax_headers: Any, tarfile: Any) -> None:
        """The map in front of the data: its entry count, then offset and length, one decimal
        number a line, padded to whole blocks; the data starts at the next block."""
        wanted: int | None = None
        numbers: list[int] = []
        pending = b""
        while wanted is None or len(numbers) < wanted:
            block = tarfile.fileobj.read(BLOCK)
            if len(block) < BLOCK:
                raise ArchiveError(f"the archive ends inside the sparse map of member {shown(next.name)} (truncated?)")
            lines = (pending + block).split(b"\n")
            pending = lines.pop()  # a number continued in the next block, or the padding after the map
            for line in lines:
                if not line.isdigit() or len(line) > MAX_PAX_DIGITS:
                    raise ArchiveError(f"member {shown(next.name)} has a sparse map line that is not a number "
                                       f"({shown(line.decode('latin-1'), 40)})")
                if wanted is None:
                    if int(line) > self.sparse_entries:
                        raise ArchiveError(f"member {shown(next.name)} has a sparse map of {int(line)} entries "
                                           f"(at most {self.sparse_entries})")
                    wanted = 2 * int(line)
                else:
                    numbers.append(int(line))
                if len(numbers) == wanted:
                    break
            if (wanted is None or len(numbers) < wanted) and len(pending) > MAX_PAX_DIGITS:
                raise ArchiveError(f"member {shown(next.name)} has a sparse map line that is not a number")
        next.offset_data = tarfile.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))


def _clean_name(raw: str, limits: Limits) -> str:
    """The member's name as a plain relative path ("" for the archive's root folder)."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in raw):
        raise ArchiveError(f"member {shown(raw)} has a name that is not UTF-8 (bytes shown as \\xNN)")
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return ""
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise ArchiveError(f"member {shown(raw)} has an absolute or malformed path")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(f"member {shown(raw)} is not a plain relative path (it contains `..` or empty parts)")
    if len(name.encode()) > limits.path_bytes or any(len(p.encode()) > limits.name_bytes for p in parts):
        raise ArchiveError(f"member {shown(raw)} has a name longer than a file system allows "
                           f"({limits.name_bytes} bytes a part, {limits.path_bytes} in all)")
    if len(parts) > limits.depth:
        raise ArchiveError(f"member {shown(raw)} lies {len(parts)} folders deep (at most {limits.depth})")
    return posixpath.join(*parts)


def _kind(info: tarfile.TarInfo) -> str:
    """"dir" or "file", or ArchiveError naming what else the member is."""
    if info.type == tarfile.DIRTYPE:
        return "dir"
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.GNUTYPE_SPARSE):
        return "file"
    what = ("a symbolic link" if info.issym() else "a hard link" if info.islnk()
            else "a device or FIFO" if info.isdev() else f"of tar type {shown(info.type.decode('latin-1'))}")
    raise ArchiveError(f"member {shown(info.name)} is {what}; only directories and regular files are accepted")


def _sparse_map(info: tarfile.TarInfo, stored: int, limits: Limits) -> tuple[tuple[int, int], ...] | None:
    """The member's sparse map, checked: bounded, sorted, inside its real size, its data inside
    the `stored` bytes the archive holds for it."""
    raw: Any = info.sparse
    if raw is None:
        return None
    if len(raw) > limits.sparse_entries:
        raise ArchiveError(f"member {shown(info.name)} has a sparse map of {len(raw)} entries (at most "
                           f"{limits.sparse_entries})")
    regions, end, data = [], 0, 0
    for offset, length in raw:
        if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length < 0 \
                or offset + length > info.size:
            raise ArchiveError(f"member {shown(info.name)} has a sparse map entry ({offset}, {length}) outside its "
                               f"size of {info.size} bytes")
        if length == 0:
            continue  # unused slots of the old GNU header, and the (size, 0) end of a file ending in a hole
        if offset < end:
            raise ArchiveError(f"member {shown(info.name)} has a sparse map whose entries overlap or are out of order "
                               f"(({offset}, {length}) after data up to {end})")
        regions.append((offset, length))
        end = offset + length
        data += length
    if data > stored:
        raise ArchiveError(f"member {shown(info.name)} has a sparse map of {data} data bytes, more than the {stored} "
                           "it stores")
    return tuple(regions)


def _check_end(raw: BinaryIO, offset: int, count: int, path: str) -> None:
    """After the last member comes the end-of-archive marker (a zero block): tarfile stops quietly
    at a header that is cut off or damaged, which would drop the members after it."""
    raw.seek(offset)
    marker = raw.read(BLOCK)
    if len(marker) < BLOCK or marker.count(0) != BLOCK:
        raise ArchiveError(f"the archive {shown(os.path.basename(path))} stops after {count} member(s) without the "
                           "end-of-archive marker: it is truncated, damaged, or has trailing data that is not tar")


def scan(path: str | os.PathLike[str], limits: Limits | None = None) -> list[Member]:
    """Every member of the plain tar archive at `path`, checked (see the module docstring) against
    `limits` (default: the module's LIMITS as it is at the call), in archive order; the archive's
    own root folder ("./") and repeated folders are left out."""
    path = os.fspath(path)
    limits = limits or LIMITS
    members: list[Member] = []
    seen: dict[str, bool] = {}  # name -> is a directory
    with open(path, "rb") as raw:
        size_on_disk = os.fstat(raw.fileno()).st_size
        head = raw.read(8)
        kind = compression(head)
        if kind:
            raise ArchiveError(f"the file is {kind}-compressed, not a plain tar archive; Qdrant writes snapshots as plain "
                               "tar and reads them without decompressing, so keep the snapshot as Qdrant wrote it")
        raw.seek(0)
        src = _HeaderBudget(raw, limits.header_bytes)
        apparent = 0
        count = 0
        try:
            info_class = type("_Info", (_StrictInfo,), {"sparse_entries": limits.sparse_entries})
            tar = tarfile.TarFile(fileobj=src, mode="r", encoding="utf-8", errors="surrogateescape",  # type: ignore[arg-type]
                                  tarinfo=info_class)
            position = 0
            while True:
                src.renew()
                info = tar.next()  # the first call hands over the member TarFile() read
                if info is None:
                    break
                tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed; the reader's list, bounded by `limits.members`
                count += 1
                if count > limits.members:
                    raise ArchiveError(f"the archive has more than {limits.members} members")
                name = _clean_name(info.name, limits)
                kind_ = _kind(info)
                if info.size < 0 or info.size > limits.member_bytes:
                    raise ArchiveError(f"member {shown(info.name)} declares a size of {info.size} bytes (at most "
                                       f"{limits.member_bytes})")
                # Before tarfile skips to the next header: that header lies after this one and inside the
                # file (a negative stored size would move back, and getmembers() loops there forever).
                if not (position <= info.offset < info.offset_data <= tar.offset <= size_on_disk):
                    raise ArchiveError(f"member {shown(info.name)} declares a size that places its data outside the "
                                       f"archive ({size_on_disk} bytes): negative, or past the end (truncated file?)")
                stored = tar.offset - info.offset_data
                sparse = _sparse_map(info, stored, limits)
                if sparse is None and kind_ == "file" and info.size > stored:
                    raise ArchiveError(f"member {shown(info.name)} declares {info.size} bytes but the archive holds "
                                       f"{stored} for it")
                position = tar.offset
                apparent += info.size if kind_ == "file" else 0
                if apparent - size_on_disk > limits.expansion_bytes:
                    raise ArchiveError(f"the archive's files would take {apparent} bytes, more than {limits.expansion_bytes} "
                                       f"beyond its own {size_on_disk} (sparse holes)")
                if not name:
                    if kind_ == "dir":
                        continue
                    raise ArchiveError(f"member {shown(info.name)} has no name")
                if name in seen:
                    if kind_ == "dir" and seen[name]:
                        continue
                    raise ArchiveError(f"member {shown(name)} appears more than once")
                seen[name] = kind_ == "dir"
                members.append(Member(name, kind_ == "dir", info.size if kind_ == "file" else 0, info.offset_data,
                                      sparse))
            end = tar.offset
        except tarfile.ReadError as exc:
            raise ArchiveError(f"the file is not a readable tar archive: {' '.join(str(exc).split())}") from None
        except (tarfile.TarError, EOFError, ValueError, IndexError, OverflowError) as exc:
            if isinstance(exc, ArchiveError):
                raise
            raise ArchiveError(f"the archive is damaged: {' '.join(str(exc).split()) or type(exc).__name__}") from None
        _check_end(raw, end, count, path)
    # No member lies under a file (listed before or after it): extraction would need it to be a folder too.
    for member in members:
        parent = posixpath.dirname(member.name)
        while parent:
            if seen.get(parent) is False:
                raise ArchiveError(f"member {shown(member.name)} lies under {shown(parent)}, which is a file")
            parent = posixpath.dirname(parent)
    return members


def _copy(src: BinaryIO, dst: Any, length: int, name: str) -> None:
    while length:
        data = src.read(min(COPY_CHUNK, length))
        if not data:
            raise ArchiveError(f"the archive ends inside {shown(name)} (truncated, or changed since it was checked)")
        dst.write(data)
        length -= len(data)


def extract(path: str | os.PathLike[str], target: str | os.PathLike[str], members: list[Member]) -> None:
    """Write `members` (what `scan(path)` returned) under `target`, created if missing. Files are
    created O_EXCL (an existing file raises FileExistsError, it is not overwritten); sparse files
    keep their holes."""
    target = os.fspath(target)
    os.makedirs(target, exist_ok=True)
    with open(path, "rb") as src:
        for member in members:
            dest = os.path.join(target, *member.name.split("/"))
            if member.is_dir:
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "xb") as out:
                src.seek(member.offset_data)
                if member.sparse is None:
                    _copy(src, out, member.size, member.name)
                else:
                    for offset, length in member.sparse:
                        out.seek(offset)
                        _copy(src, out, length, member.name)
                    out.truncate(member.size)
