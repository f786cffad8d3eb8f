package rootfs

// node records, for one path, what the layers applied so far (the higher
// ones) decided. Layers are numbered from 1 at the bottom; 0 means none.
type node struct {
	children map[string]*node

	inImage bool // an entry exists at this path in the image
	isDir   bool // ... and it is a directory
	// createdBy is the highest layer whose entries put this path in the
	// image: the layer of the entry itself, or of the first entry below
	// it for a directory no higher layer named.
	createdBy int
	// explicitDir is the highest layer with a directory entry here.
	explicitDir int
	// sealedBy is the lowest layer whose whiteout or non-directory here
	// hides this path and everything below it from lower layers.
	sealedBy int
	// opaqueBy is the lowest layer whose opaque marker hides this
	// directory's children from lower layers.
	opaqueBy int
	// pendingLink is set while this path is a hard link waiting for its
	// target from a lower layer.
	pendingLink *inodeRef
	// by names the entry that created this path, for error messages.
	by entryID
}

// entryID names an entry of a layer in errors.
type entryID struct {
	layer int
	name  string
}

func (n *node) child(name string) *node {
	if n.children == nil {
		n.children = map[string]*node{}
	}
	c := n.children[name]
	if c == nil {
		c = &node{}
		n.children[name] = c
	}
	return c
}

// find returns the node at comps, or nil, and the lowest layer that hides
// the path from the layers below it (0 if none): a seal on the path or an
// ancestor, or an opaque marker on an ancestor.
func (n *node) find(comps []string) (*node, int) {
	hiddenBy := 0
	lower := func(l int) {
		if l != 0 && (hiddenBy == 0 || l < hiddenBy) {
			hiddenBy = l
		}
	}
	cur := n
	for _, name := range comps {
		lower(cur.opaqueBy)
		c := cur.children[name]
		if c == nil {
			return nil, hiddenBy
		}
		lower(c.sealedBy)
		cur = c
	}
	return cur, hiddenBy
}

// seal is a decision of the layer being applied that takes effect for the
// layers below it once the layer is done.
type seal struct {
	comps  []string
	opaque bool // hide the directory's children, not the path itself
}

func (n *node) commit(layer int, seals []seal) {
	for _, s := range seals {
		c := n
		for _, name := range s.comps {
			c = c.child(name)
		}
		if s.opaque {
			c.opaqueBy = layer
		} else {
			c.sealedBy = layer
		}
	}
}
