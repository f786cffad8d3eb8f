// Package image is the node's content store for OCI images.
//
// Images are pulled with go-containerregistry and kept on disk as an OCI
// image layout under <root>/images:
//
//	oci-layout                 {"imageLayoutVersion":"1.0.0"}
//	index.json                 one descriptor per ref: manifest digest, platform,
//	                           annotations for the ref, config and repo digest
//	blobs/sha256/<hex>         manifests, configs, layers (as downloaded, compressed)
//	rootfs/<manifest-hex>.ext4 read-only root filesystem per image, built once
//	ingest/                    downloads in progress (temp files, renamed when verified)
//	locks/                     flock files shared with other processes on the node
//
// Because the layout is standard, `crane` and `skopeo` can read the store.
//
// Several processes may use one store at once (the node and the CLI): blob
// downloads and rootfs builds are serialised by a flock per digest, index
// updates by a flock on index.json's lock, and Prune takes the store-wide
// gc lock exclusively while Pull and Rootfs hold it shared. Inside one
// process, concurrent pulls of one image share a single download.
package image
