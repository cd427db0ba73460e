// Package metrics holds what Headwater's components share about Prometheus:
// registering a collector on a registry that may already hold it.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it; when reg already holds an
// equal collector (a second component built on the same registry), that
// one is returned instead, so both count into the same series. A nil reg
// leaves c unregistered. Any other registration error is a programming
// error and panics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
