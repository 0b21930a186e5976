// Command etcd is upstream etcd's main (go.etcd.io/etcd/v3/main.go), built from the server
// module so that the pinned release comes straight from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
