package ext4

// groupStats are one group's counters for its descriptor.
type groupStats struct {
	freeBlocks, freeInodes, usedDirs uint64
}

// encodeGDT builds the group descriptor table (32-byte ext4_group_desc
// without the 64bit feature), padded to whole blocks.
func encodeGDT(geo *geometry, stats []groupStats) []byte {
	b := make([]byte, geo.gdt*blockSize)
	for g := range geo.groups {
		d := b[g*descSize:]
		le.PutUint32(d[0x00:], uint32(geo.blockBitmap[g]))
		le.PutUint32(d[0x04:], uint32(geo.inodeBitmap[g]))
		le.PutUint32(d[0x08:], uint32(geo.inodeTable[g]))
		le.PutUint16(d[0x0C:], uint16(stats[g].freeBlocks))
		le.PutUint16(d[0x0E:], uint16(stats[g].freeInodes))
		le.PutUint16(d[0x10:], uint16(stats[g].usedDirs))
		// bg_flags, checksums, itable_unused: only meaningful with
		// uninit_bg or metadata_csum, which these filesystems lack.
	}
	return b
}

// superblock is what encodeSuper needs besides the geometry.
type superblock struct {
	freeBlocks, freeInodes uint64
	compat, incompat, ro   uint32
	label                  string
	uuid                   [16]byte
	hashSeed               [16]byte
	time                   uint32
}

// encodeSuper builds the 1024-byte superblock (struct ext4_super_block).
// group is the copy's s_block_group_nr.
func encodeSuper(geo *geometry, sb *superblock, group uint16) []byte {
	b := make([]byte, 1024)
	le.PutUint32(b[0x00:], uint32(geo.groups*geo.ipg))
	le.PutUint32(b[0x04:], uint32(geo.blocks))
	le.PutUint32(b[0x08:], 0) // s_r_blocks_count: nothing kept for root
	le.PutUint32(b[0x0C:], uint32(sb.freeBlocks))
	le.PutUint32(b[0x10:], uint32(sb.freeInodes))
	le.PutUint32(b[0x14:], 0) // s_first_data_block: 0 for 4 KiB blocks
	le.PutUint32(b[0x18:], 2) // s_log_block_size: 1024 << 2
	le.PutUint32(b[0x1C:], 2) // s_log_cluster_size
	le.PutUint32(b[0x20:], blocksPerGroup)
	le.PutUint32(b[0x24:], blocksPerGroup) // s_clusters_per_group
	le.PutUint32(b[0x28:], uint32(geo.ipg))
	le.PutUint32(b[0x2C:], 0) // s_mtime: never mounted
	// s_wtime stays 0: e2fsck flags a write time after its own clock,
	// and time(2)'s coarse clock may still be a second behind Go's.
	le.PutUint16(b[0x34:], 0)      // s_mnt_count
	le.PutUint16(b[0x36:], 0xFFFF) // s_max_mnt_count: -1, no forced checks
	le.PutUint16(b[0x38:], superMagic)
	le.PutUint16(b[0x3A:], 1)       // s_state: cleanly unmounted
	le.PutUint16(b[0x3C:], 1)       // s_errors: continue
	le.PutUint32(b[0x40:], sb.time) // s_lastcheck
	le.PutUint32(b[0x48:], 0)       // s_creator_os: Linux
	le.PutUint32(b[0x4C:], 1)       // s_rev_level: dynamic inode sizes
	le.PutUint32(b[0x54:], firstIno)
	le.PutUint16(b[0x58:], inodeSize)
	le.PutUint16(b[0x5A:], group)
	le.PutUint32(b[0x5C:], sb.compat)
	le.PutUint32(b[0x60:], sb.incompat)
	le.PutUint32(b[0x64:], sb.ro)
	copy(b[0x68:0x78], sb.uuid[:])
	copy(b[0x78:0x88], sb.label)
	copy(b[0xEC:0xFC], sb.hashSeed[:])
	if sb.compat&compatDirIndex != 0 {
		b[0xFC] = 1 // s_def_hash_version: half_md4, mke2fs's default
	}
	le.PutUint32(b[0x108:], sb.time)    // s_mkfs_time
	le.PutUint16(b[0x15C:], extraIsize) // s_min_extra_isize
	le.PutUint16(b[0x15E:], extraIsize) // s_want_extra_isize
	if sb.compat&compatDirIndex != 0 {
		le.PutUint32(b[0x160:], 0x2) // s_flags: EXT2_FLAGS_UNSIGNED_HASH
	}
	b[0x174] = 4 // s_log_groups_per_flex: 16, mke2fs's default
	return b
}
