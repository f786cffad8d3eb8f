// Package ext4 writes ext4 filesystem images in pure Go, so that the same
// code builds a container's root filesystem on Linux and on macOS (whose
// filesystems cannot hold Linux owners, device nodes or xattrs), and so that
// nothing a container image contains is ever unpacked onto the host.
//
// A Writer takes entries (directories, regular files streamed from an
// io.Reader, symlinks, hard links, devices, fifos, sockets) with 32-bit
// owners, full modes, nanosecond times and xattrs. File data is written as it
// arrives, packed from the start of the image; Close lays out all metadata
// (inode tables, bitmaps, directories, extent-tree and xattr blocks) after
// the data and truncates the file to what it used, so an image is about the
// size of its content. CreateEmpty makes an empty, writable, sparse
// filesystem of a given size, for a container's writable layer.
//
// On-disk choices (ext4 layout as documented in the kernel's
// Documentation/filesystems/ext4/):
//   - 4 KiB blocks, 32768 blocks per group (one bitmap block per group),
//     256-byte inodes with 32 bytes of extra fields (nanosecond times).
//   - Features: filetype, extents, flex_bg (bitmaps and inode tables may sit
//     anywhere, which lets them follow the data), sparse_super (superblock
//     backups in groups 0, 1 and powers of 3, 5, 7), large_file, huge_file,
//     dir_nlink, extra_isize, ext_attr. No journal, no metadata_csum, no
//     64bit (so at most 16 TiB), linear (not hashed) directories.
//   - Compact images (Options.Size == 0) carry the read_only ro_compat
//     feature: they are shared by every container of an image and hold no
//     free space, so the kernel must refuse to mount them read-write. The
//     writable layer lives on a separate disk (CreateEmpty).
//   - Filesystems of a fixed size (CreateEmpty, Options.Size > 0) also set
//     dir_index so the guest kernel may turn growing directories into
//     hashed trees.
package ext4
