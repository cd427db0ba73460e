package config

import (
	"slices"
	"strings"
	"testing"
)

// TestValidateClusterRoutes checks the embedded NATS cluster keys: route
// URLs, routes with route_listen, and replicas that need a NATS cluster.
func TestValidateClusterRoutes(t *testing.T) {
	embedded := func(c *Config) {
		c.Cluster.Embedded = true
		c.Cluster.OriginURL = "http://10.0.0.5:8080"
	}
	three := func(c *Config) {
		embedded(c)
		c.Cluster.RouteListen = "0.0.0.0:6222"
		c.Cluster.Routes = []string{"nats-route://10.0.0.5:6222", "nats-route://10.0.0.6:6222", "nats-route://10.0.0.7:6222"}
		c.Cluster.Replicas = 3
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"one embedded node", embedded, nil},
		{"three nodes", three, nil},
		{"route scheme", func(c *Config) { three(c); c.Cluster.Routes[1] = "nats://10.0.0.6:6222" },
			[]string{`cluster.routes: item 2: "nats://10.0.0.6:6222" is not a nats-route://host:port URL`}},
		{"route without port", func(c *Config) { three(c); c.Cluster.Routes[0] = "nats-route://10.0.0.5" },
			[]string{`cluster.routes: item 1: "nats-route://10.0.0.5" is not a nats-route://host:port URL`}},
		{"routes without route_listen", func(c *Config) { three(c); c.Cluster.RouteListen = "" },
			[]string{`cluster.route_listen: must be set with cluster.routes (the other nodes connect to it)`}},
		{"route_listen without routes", func(c *Config) { three(c); c.Cluster.Routes = nil },
			[]string{`cluster.routes: must list the route URLs of the NATS cluster's nodes with cluster.route_listen (JetStream forms a cluster only from configured routes)`}},
		{"routes without name", func(c *Config) { three(c); c.Cluster.Name = "" },
			[]string{`cluster.name: must be set with cluster.routes`}},
		{"replicas on one server", func(c *Config) { embedded(c); c.Cluster.Replicas = 3 },
			[]string{`cluster.replicas: 3 replicas need a NATS cluster of as many nodes (cluster.route_listen, cluster.routes); one embedded server holds 1`}},
		{"routes with nats_url", func(c *Config) {
			c.Cluster.NATSURL = "nats://10.0.0.9:4222"
			c.Cluster.OriginURL = "http://10.0.0.5:8080"
			c.Cluster.Routes = []string{"nats-route://10.0.0.5:6222"}
		}, []string{`cluster.routes: cluster.routes and cluster.route_listen are for cluster.embedded`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			got := errorTexts(c.Validate())
			if !slices.Equal(got, tc.want) {
				t.Errorf("Validate() errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestNeedsOriginURLWithRoutes: an embedded node that listens for no
// clients but has routes is in a multi-node cluster: its streams are
// relayed by the others, so it needs cluster.origin_url.
func TestNeedsOriginURLWithRoutes(t *testing.T) {
	c := Default()
	c.Cluster.Embedded = true
	if c.NeedsOriginURL() {
		t.Fatal("NeedsOriginURL = true for a one-node embedded cluster")
	}
	c.Cluster.RouteListen = "0.0.0.0:6222"
	c.Cluster.Routes = []string{"nats-route://10.0.0.5:6222"}
	if !c.NeedsOriginURL() {
		t.Fatal("NeedsOriginURL = false for an embedded node with routes")
	}
}
