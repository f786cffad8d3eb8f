# image/ext4 and image/rootfs: include from the top-level Makefile with
#   include image/rootfs/rootfs.mk
# Their tests need e2fsprogs (e2fsck, debugfs, mkfs.ext4) and busybox-static,
# and, for the loop-mount tests, root.

.PHONY: rootfs-deps rootfs-test rootfs-bench ext4-fuzz

rootfs-deps: ## install what the ext4/rootfs tests use
	apt-get install -y e2fsprogs busybox-static

rootfs-test: ## ext4 writer and layer flattening tests
	go test ./image/ext4/... ./image/rootfs/...

rootfs-bench: ## Build against mkfs.ext4 -d on the same tree
	go test -v -run '^$$' ./image/rootfs/ -mkfs-ratio 9
	go test -run '^$$' -bench . -benchtime 10x ./image/rootfs/

ext4-fuzz: ## fuzz the writer's input paths for a minute
	go test -run '^$$' -fuzz FuzzAddPaths -fuzztime 60s ./image/ext4/
