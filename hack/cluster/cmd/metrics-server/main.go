// Command metrics-server is upstream's metrics-server (sigs.k8s.io/metrics-server v0.9.0),
// built in the same module as the control plane: it compiles against the same k8s.io
// v0.37.2 libraries, so it reuses their build cache instead of compiling a second,
// older copy of k8s.io/apiserver and client-go (see internal/build).
// It mirrors upstream's cmd/metrics-server main package: the same command constructor,
// stopped by SIGTERM/SIGINT through the generic apiserver's signal handler.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app"
)

func main() {
	os.Exit(cli.Run(app.NewMetricsServerCommand(genericapiserver.SetupSignalHandler())))
}
