//go:build tools

// Package tools pins the control-plane commands that scripts/install-tools.sh builds for
// the e2e suite. Nothing here ships in relay-operator.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
