// Command etcd is upstream's etcd server (go.etcd.io/etcd/server/v3 v3.7.0),
// built from the Go module proxy. etcdmain.Main is what etcd's own main calls.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
