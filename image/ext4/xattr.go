package ext4

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// xattr is one extended attribute with its name split into ext4's
// namespace index and the rest of the name.
type xattr struct {
	index uint8
	name  string
	value []byte
}

// Name indexes (fs/ext4/xattr.h EXT4_XATTR_INDEX_*).
const (
	xattrUser       = 1
	xattrACLAccess  = 2
	xattrACLDefault = 3
	xattrTrusted    = 4
	xattrSecurity   = 6
)

// Space for xattrs: in the inode after the extra fields (minus the 4-byte
// magic and the 4-byte end marker), and in one block (minus the 32-byte
// header and the end marker).
const (
	xattrInodeSpace = inodeSize - goodOldInode - extraIsize - 4 - 4
	xattrBlockSpace = blockSize - 32 - 4
	xattrEntryLen   = 16
)

func (x xattr) entrySize() int { return xattrEntryLen + align4(len(x.name)) }
func (x xattr) valueSize() int { return align4(len(x.value)) }
func (x xattr) size() int      { return x.entrySize() + x.valueSize() }

func parseXattr(full string, value []byte) (xattr, error) {
	switch full {
	case "system.posix_acl_access", "system.posix_acl_default":
		v, err := aclToDisk(value)
		if err != nil {
			return xattr{}, fmt.Errorf("xattr %s: %w", full, err)
		}
		idx := uint8(xattrACLAccess)
		if full == "system.posix_acl_default" {
			idx = xattrACLDefault
		}
		return xattr{index: idx, value: v}, nil
	}
	for _, p := range [...]struct {
		prefix string
		index  uint8
	}{{"user.", xattrUser}, {"trusted.", xattrTrusted}, {"security.", xattrSecurity}} {
		if rest, ok := strings.CutPrefix(full, p.prefix); ok {
			if rest == "" || len(rest) > maxNameLen {
				return xattr{}, fmt.Errorf("xattr name %q: %w", full, ErrInvalid)
			}
			return xattr{index: p.index, name: rest, value: value}, nil
		}
	}
	return xattr{}, fmt.Errorf("xattr %q: namespace not supported by ext4: %w", full, ErrInvalid)
}

// planXattrs orders xattrs as the kernel expects inside a block (by index,
// name length, name) and decides which fit in the inode: the smallest
// ones, the others sharing one block. It returns the xattrs with the ones
// for the inode first.
func planXattrs(m map[string][]byte) ([]xattr, int, error) {
	if len(m) == 0 {
		return nil, 0, nil
	}
	xs := make([]xattr, 0, len(m))
	for name, v := range m {
		x, err := parseXattr(name, v)
		if err != nil {
			return nil, 0, err
		}
		xs = append(xs, x)
	}
	slices.SortFunc(xs, func(a, b xattr) int { return cmp.Compare(a.size(), b.size()) })
	used, inInode := 0, 0
	for inInode < len(xs) && used+xs[inInode].size() <= xattrInodeSpace {
		used += xs[inInode].size()
		inInode++
	}
	rest := xs[inInode:]
	slices.SortFunc(rest, compareXattr)
	total := 0
	for _, x := range rest {
		total += x.size()
	}
	if total > xattrBlockSpace {
		return nil, 0, fmt.Errorf("xattrs need %d bytes, more than an inode and one block hold: %w", total, ErrTooLarge)
	}
	return xs, inInode, nil
}

// compareXattr is the kernel's sort order for xattr blocks
// (ext4_xattr_find_entry stops early on a sorted block).
func compareXattr(a, b xattr) int {
	if c := cmp.Compare(a.index, b.index); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.name), len(b.name)); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// xattrHash is ext2fs_ext_attr_hash_entry: name bytes, then the value as
// little-endian 32-bit words, zero-padded.
func xattrHash(x xattr) uint32 {
	var h uint32
	for i := 0; i < len(x.name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(x.name[i])
	}
	for i := 0; i < len(x.value); i += 4 {
		var word [4]byte
		copy(word[:], x.value[i:])
		h = h<<16 ^ h>>16 ^ le.Uint32(word[:])
	}
	return h
}

// encodeXattrs writes entries into region from entriesAt on and values from
// the region's end; value offsets count from offsBase (the first entry in
// an inode, the block's start in a block). It returns the combined entry
// hashes as a block header wants them (ext2fs_ext_attr_block_rehash).
func encodeXattrs(region []byte, entriesAt, offsBase int, xs []xattr) uint32 {
	off, end := entriesAt, len(region)
	var blockHash uint32
	hashed := true
	for _, x := range xs {
		e := region[off:]
		h := xattrHash(x)
		e[0] = byte(len(x.name))
		e[1] = x.index
		valueOffs := 0
		if len(x.value) > 0 {
			end -= x.valueSize()
			copy(region[end:], x.value)
			valueOffs = end - offsBase
		}
		le.PutUint16(e[2:], uint16(valueOffs))
		le.PutUint32(e[4:], 0) // e_value_inum: values live here, not in inodes
		le.PutUint32(e[8:], uint32(len(x.value)))
		le.PutUint32(e[12:], h)
		copy(e[xattrEntryLen:], x.name)
		off += x.entrySize()
		// An entry hash of zero makes the block hash zero.
		if h == 0 {
			hashed = false
		}
		blockHash = blockHash<<16 ^ blockHash>>16 ^ h
	}
	if !hashed {
		return 0
	}
	return blockHash
}

// encodeXattrBlock builds an xattr block for xs (already in kernel order).
func encodeXattrBlock(xs []xattr) []byte {
	b := make([]byte, blockSize)
	hash := encodeXattrs(b, 32, 0, xs)
	le.PutUint32(b[0:], xattrMagic)
	le.PutUint32(b[4:], 1) // h_refcount, set per use by Close
	le.PutUint32(b[8:], 1) // h_blocks
	le.PutUint32(b[12:], hash)
	return b
}

// POSIX ACL tags (include/uapi/linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclToDisk converts a POSIX ACL from the xattr format the kernel exchanges
// with user space (version 2, 8-byte entries) to the one ext4 stores
// (version 1, 4-byte entries for tags without an id; fs/ext4/acl.h).
func aclToDisk(v []byte) ([]byte, error) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || le.Uint32(v) != 2 {
		return nil, fmt.Errorf("malformed POSIX ACL of %d bytes: %w", len(v), ErrInvalid)
	}
	out := le.AppendUint32(nil, 1)
	for e := v[4:]; len(e) > 0; e = e[8:] {
		tag, perm, id := le.Uint16(e), le.Uint16(e[2:]), le.Uint32(e[4:])
		switch tag {
		case aclUser, aclGroup:
			out = le.AppendUint16(le.AppendUint16(out, tag), perm)
			out = le.AppendUint32(out, id)
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			out = le.AppendUint16(le.AppendUint16(out, tag), perm)
		default:
			return nil, fmt.Errorf("POSIX ACL tag %#x: %w", tag, ErrInvalid)
		}
	}
	return out, nil
}
