// Package rootfs flattens OCI image layers straight into a read-only ext4
// image (image/ext4): nothing is unpacked onto the host filesystem, so a
// hostile layer has nothing on the host to reach, and the same code runs on
// macOS.
//
// Layers are applied top-down, so that each surviving file's data is
// written exactly once and hidden files are never written. The result is
// the one bottom-up extraction (containerd's archive.Apply, OCI image spec
// layer.md) gives:
//
//   - A path decided by a higher layer hides the same path in lower layers:
//     a non-directory or a whiteout (.wh.<name>) there hides the whole
//     subtree below; an opaque marker (.wh..wh..opq) hides a directory's
//     lower children. Whiteouts never hide entries of their own layer.
//   - Directories merge; a directory's metadata comes from the highest
//     layer that has an entry for it. Parents that no layer names are made
//     0755 root:root.
//   - A hard link in layer N names the inode its target has after layers
//     1..N (up to that entry). Links into lower layers wait for the target
//     to be met further down; a target hidden by a higher layer is still
//     written, once, under the link's name. The rare link to a regular file
//     of its own layer that a higher layer hid, and whose data has already
//     streamed past, costs a second read of that one layer.
//
// Refused, with an error naming the layer and the entry, and no image left
// behind: names with ".." or a leading "/", any entry below a symlink or
// other non-directory (in the same layer or below a higher layer's writes),
// hard links that leave the tree or whose target is missing or a
// directory, and damaged streams: gzip or tar errors, a tar without its
// end-of-archive blocks, or bytes other than zero padding after it.
package rootfs
