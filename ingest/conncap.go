package ingest

import "github.com/headwater-live/headwater/internal/connlimit"

// ConnCap limits concurrent connections: in all, and per client address
// (an IPv4 address or an IPv6 /64, as ConnLimiter). A limit of 0 or less is
// no limit. Safe for concurrent use; a nil ConnCap allows everything. The
// origin and admin HTTP listeners count per address with the same code.
type ConnCap = connlimit.Cap

// NewConnCap limits connections to max in all and perAddr per address; it
// returns nil (no limit) when both are 0 or less.
func NewConnCap(max, perAddr int) *ConnCap { return connlimit.New(max, perAddr) }
