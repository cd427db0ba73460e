package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterReusesExisting(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "headwater_test_total", Help: "test"})
	}
	a := Register(reg, newCounter())
	b := Register(reg, newCounter())
	if a != b {
		t.Fatal("second registration did not return the registered collector")
	}
	b.Inc()
	if got := Register[prometheus.Counter](nil, newCounter()); got == a {
		t.Fatal("nil registry returned the registered collector")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a conflicting registration did not panic")
		}
	}()
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "headwater_test_total", Help: "other"}))
}
