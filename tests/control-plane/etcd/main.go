// Command etcd is etcd's own server entry point, built at the version kube-apiserver
// pins, for the e2e control plane only.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
