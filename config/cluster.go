package config

import (
	"net/url"
	"strings"
)

// Roles of a serve node (cluster.role).
const (
	// RoleAll runs ingest, packaging, the origin and (with
	// transcoder.local_workers) GOP workers: the default, and the only
	// role of a single box.
	RoleAll = "all"
	// RoleOrigin runs the origin (serving every stream of the cluster
	// through the relay) and no ingest listener.
	RoleOrigin = "origin"
)

// defaultClusterName is cluster.name's default.
const defaultClusterName = "headwater"

// LocalWorkersAuto is transcoder.local_workers' default: every slot of the
// pool with cluster.embedded (one node behaves like a single box), none
// with cluster.nats_url (workers are separate processes).
const LocalWorkersAuto = -1

// ClusterConfig configures the node's membership of a Headwater cluster on
// NATS JetStream (package cluster; docs/cluster.md). With neither NATSURL
// nor Embedded the cluster is off and nothing of it runs.
type ClusterConfig struct {
	// NATSURL joins an existing NATS: comma-separated nats:// or tls://
	// URLs. It defaults to "".
	NATSURL string `yaml:"nats_url" doc:"Join an existing NATS (JetStream): comma-separated nats:// URLs; \"\" with embedded false = no cluster."`
	// CredsFile is a NATS user credentials file. It defaults to "".
	CredsFile string `yaml:"creds_file" doc:"NATS user credentials file (JWT and nkey seed)."`
	// NKeyFile is an nkey seed file. It defaults to "".
	NKeyFile string `yaml:"nkey_file" doc:"NATS nkey seed file."`
	// TLSCA is a PEM file of the CAs verifying the NATS server. It
	// defaults to "".
	TLSCA string `yaml:"tls_ca" doc:"PEM file of the CAs that verify the NATS server."`
	// TLSCert and TLSKey are the client certificate and key (mutual TLS).
	// They default to "".
	TLSCert string `yaml:"tls_cert" doc:"Client certificate (PEM) presented to NATS."`
	TLSKey  string `yaml:"tls_key" doc:"Client private key (PEM) for tls_cert."`
	// Embedded starts an in-process JetStream server. It defaults to false.
	Embedded bool `yaml:"embedded" doc:"Start an embedded NATS JetStream server in this process."`
	// StoreDir is the embedded server's store directory; "" is a temporary
	// one removed at exit. It defaults to "".
	StoreDir string `yaml:"store_dir" doc:"Embedded JetStream store directory; \"\" = a temporary directory removed at exit."`
	// Listen is the embedded server's client address for other nodes and
	// workers; "" listens on no port. It defaults to "".
	Listen string `yaml:"listen" doc:"Embedded NATS client listen address for other nodes and workers, host:port; \"\" = in-process only."`
	// Name is the embedded NATS cluster (routes) name. It defaults to
	// "headwater".
	Name string `yaml:"name" doc:"Embedded NATS cluster name (the same on every node)."`
	// RouteListen is the embedded route listen address; "" forms no NATS
	// cluster. It defaults to "".
	RouteListen string `yaml:"route_listen" doc:"Embedded NATS route listen address, host:port; \"\" = no NATS cluster."`
	// Routes are the route URLs of the NATS cluster's nodes. It defaults
	// to [].
	Routes []string `yaml:"routes" doc:"Route URLs of the embedded NATS cluster's nodes (nats-route://host:6222)."`
	// Replicas is the JetStream replica count (1, or 3 in a three-node
	// cluster). It defaults to 1.
	Replicas int `yaml:"replicas" doc:"JetStream replicas of Headwater's streams and buckets (1..5)."`
	// NodeID is this node's id; "" is the hostname and a random suffix. It
	// defaults to "".
	NodeID string `yaml:"node_id" doc:"This node's id (letters, digits, '-', '_'); \"\" = hostname and a random suffix."`
	// OriginURL is this node's origin base URL as other nodes reach it.
	// It defaults to "".
	OriginURL string `yaml:"origin_url" doc:"This node's origin base URL as other nodes reach it (http://10.0.0.5:8080); required for a node that ingests."`
	// PlacementTTL is how long a stream's placement entry lives without
	// heartbeat. It defaults to 10s.
	PlacementTTL Duration `yaml:"placement_ttl" doc:"Lifetime of a stream's placement entry without heartbeat (refreshed every third of it)."`
	// SecretFile holds the secret nodes send to each other's origins
	// (relayed requests skip token and CDN checks, done by the relaying
	// node). It defaults to "".
	SecretFile string `yaml:"secret_file" doc:"File holding the cluster secret (>= 16 bytes) relayed origin requests carry; required with playback tokens, the CDN secret or HLS encryption."`
	// Role is what a serve node runs: "all" or "origin" (no ingest). It
	// defaults to "all".
	Role string `yaml:"role" doc:"What serve runs: all (ingest, packaging, origin) or origin (origin only, no ingest listeners)."`
}

// NeedsOriginURL reports whether a serve node must have cluster.origin_url:
// it ingests (role all, an ingest listener) and other nodes can reach it
// (not a one-node embedded cluster). `headwater worker` never needs one.
func (c *Config) NeedsOriginURL() bool {
	k := c.Cluster
	return k.Enabled() && k.OriginURL == "" && k.Role == RoleAll &&
		c.RTMP.Address+c.SRT.Address+c.RTSP.Address != "" && !(k.Embedded && k.Listen == "" && k.RouteListen == "")
}

// Enabled reports whether the cluster is on: nats_url set or embedded.
func (c ClusterConfig) Enabled() bool { return c.NATSURL != "" || c.Embedded }

// ClusterSecretHeader is the header carrying the cluster secret on
// requests a node's origin relays to the owner's.
const ClusterSecretHeader = "X-Headwater-Cluster"

// validateCluster checks the cluster section and its rules with the
// transcoder and playback sections.
func (c *Config) validateCluster(v *validator) {
	k := c.Cluster
	v.oneOf("cluster.role", k.Role, RoleAll, RoleOrigin)
	v.atLeast("transcoder.local_workers", c.Transcoder.LocalWorkers, LocalWorkersAuto)
	if k.Replicas < 1 || k.Replicas > 5 {
		v.add("cluster.replicas", "must be between 1 and 5, got %d", k.Replicas)
	}
	v.positive("cluster.placement_ttl", k.PlacementTTL)
	if !k.Enabled() {
		if k.Role == RoleOrigin {
			v.add("cluster.role", "origin needs a cluster (cluster.nats_url or cluster.embedded): alone it would serve nothing")
		}
		return
	}
	if k.NATSURL != "" && k.Embedded {
		v.add("cluster.embedded", "set either cluster.nats_url or cluster.embedded, not both")
	}
	for _, u := range strings.Split(k.NATSURL, ",") {
		if k.NATSURL == "" {
			break
		}
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" || (p.Scheme != "nats" && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss") {
			v.add("cluster.nats_url", "%q is not a nats://host:port URL", strings.TrimSpace(u))
		}
	}
	v.file("cluster.creds_file", k.CredsFile)
	v.file("cluster.nkey_file", k.NKeyFile)
	v.file("cluster.tls_ca", k.TLSCA)
	v.file("cluster.tls_cert", k.TLSCert)
	v.file("cluster.tls_key", k.TLSKey)
	v.file("cluster.secret_file", k.SecretFile)
	if (k.TLSCert == "") != (k.TLSKey == "") {
		v.add("cluster.tls_key", "cluster.tls_cert and cluster.tls_key go together")
	}
	v.address("cluster.listen", k.Listen, true)
	v.address("cluster.route_listen", k.RouteListen, true)
	c.validateRoutes(v)
	if k.NodeID != "" && strings.ContainsFunc(k.NodeID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		v.add("cluster.node_id", "%q may only contain letters, digits, '-' and '_' (it is a NATS subject token)", k.NodeID)
	}
	if k.OriginURL != "" {
		if p, err := url.Parse(k.OriginURL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			v.add("cluster.origin_url", "%q is not an http(s)://host:port URL", k.OriginURL)
		}
	}
	protected := c.Playback.Tokens.Enabled() || c.Playback.CDN.Enabled() || c.HLS.Encryption.Enabled
	if protected && k.SecretFile == "" {
		v.add("cluster.secret_file", "must be set with playback tokens, the CDN secret or HLS encryption: owners serve other nodes' relayed requests only with it")
	}
}

// validateRoutes checks the embedded NATS cluster keys: route URLs, and
// that routes, route_listen and replicas > 1 go together (a JetStream
// cluster needs configured routes; replicas > 1 need a cluster).
func (c *Config) validateRoutes(v *validator) {
	k := c.Cluster
	for i, r := range k.Routes {
		p, err := url.Parse(strings.TrimSpace(r))
		if err != nil || p.Scheme != "nats-route" || p.Host == "" || p.Port() == "" {
			v.add("cluster.routes", "item %d: %q is not a nats-route://host:port URL", i+1, r)
		}
	}
	if !k.Embedded {
		if len(k.Routes) > 0 || k.RouteListen != "" {
			v.add("cluster.routes", "cluster.routes and cluster.route_listen are for cluster.embedded")
		}
		return
	}
	switch {
	case len(k.Routes) > 0 && k.RouteListen == "":
		v.add("cluster.route_listen", "must be set with cluster.routes (the other nodes connect to it)")
	case len(k.Routes) == 0 && k.RouteListen != "":
		v.add("cluster.routes", "must list the route URLs of the NATS cluster's nodes with cluster.route_listen (JetStream forms a cluster only from configured routes)")
	}
	if len(k.Routes) > 0 && strings.TrimSpace(k.Name) == "" {
		v.add("cluster.name", "must be set with cluster.routes")
	}
	if k.RouteListen == "" && len(k.Routes) == 0 && k.Replicas > 1 {
		v.add("cluster.replicas", "%d replicas need a NATS cluster of as many nodes (cluster.route_listen, cluster.routes); one embedded server holds 1", k.Replicas)
	}
}
