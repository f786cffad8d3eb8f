// Command kube-controller-manager is upstream's kube-controller-manager (k8s.io/kubernetes v1.37.2), built from
// the Go module proxy so the vk-applevm node never depends on k8s.io/kubernetes.
// It mirrors upstream's cmd/kube-controller-manager main package: the same constructor and the
// same side-effect imports (JSON logging, client-go and version metrics).
package main

import (
	"os"
	_ "time/tzdata" // upstream embeds tzdata (CronJob time zones)

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
