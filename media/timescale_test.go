package media

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestRescale(t *testing.T) {
	const day = 24 * 3600
	tests := []struct {
		name              string
		v                 int64
		from, to          uint32
		down, up, nearest int64
	}{
		{"same rate", 12345, 90000, 90000, 12345, 12345, 12345},
		{"unknown clock", 777, 0, 90000, 777, 777, 777},
		{"zero", 0, 1000, 90000, 0, 0, 0},
		{"exact up", 33, 1000, 90000, 2970, 2970, 2970},
		{"exact down", 2970, 90000, 1000, 33, 33, 33},
		{"below half", 1, 90000, 1000, 0, 1, 0},
		{"half", 45, 90000, 1000, 0, 1, 1},
		{"above half", 46, 90000, 1000, 0, 1, 1},
		{"negative below half", -1, 90000, 1000, -1, 0, 0},
		{"negative half", -45, 90000, 1000, -1, 0, 0},
		{"negative above half", -46, 90000, 1000, -1, 0, -1},
		{"negative exact", -2970, 90000, 1000, -33, -33, -33},
		{"48k to 90k", 1, 48000, 90000, 1, 2, 2},
		{"90k to 48k", 2, 90000, 48000, 1, 2, 1},
		{"opus frame", 960, 48000, 44100, 882, 882, 882},
		{"a year at 90 kHz in ns", 365 * day * 90000, 90000, 1e9, 365 * day * 1e9, 365 * day * 1e9, 365 * day * 1e9},
		{"a year in ns at 90 kHz", 365*day*1e9 + 1, 1e9, 90000, 365 * day * 90000, 365*day*90000 + 1, 365 * day * 90000},
		{"max rates", math.MaxUint32 - 1, math.MaxUint32, math.MaxUint32 - 1, math.MaxUint32 - 2, math.MaxUint32 - 1, math.MaxUint32 - 2},
		{"200 years at 90 kHz in ns", 200 * 365 * day * 90000, 90000, 1e9, 200 * 365 * day * 1e9, 200 * 365 * day * 1e9, 200 * 365 * day * 1e9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rescale(tc.v, tc.from, tc.to); got != tc.down {
				t.Errorf("Rescale(%d, %d, %d) = %d, want %d", tc.v, tc.from, tc.to, got, tc.down)
			}
			if got := RescaleUp(tc.v, tc.from, tc.to); got != tc.up {
				t.Errorf("RescaleUp(%d, %d, %d) = %d, want %d", tc.v, tc.from, tc.to, got, tc.up)
			}
			if got := RescaleNearest(tc.v, tc.from, tc.to); got != tc.nearest {
				t.Errorf("RescaleNearest(%d, %d, %d) = %d, want %d", tc.v, tc.from, tc.to, got, tc.nearest)
			}
		})
	}
}

// TestRescaleExact compares with exact rational arithmetic over random
// values and rates, large ones included.
func TestRescaleExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rates := []uint32{1, 1000, 8000, 44100, 48000, 90000, 1e9, math.MaxUint32}
	for range 20000 {
		from := rates[rng.IntN(len(rates))]
		to := rates[rng.IntN(len(rates))]
		if rng.IntN(4) == 0 {
			from, to = rng.Uint32()|1, rng.Uint32()|1
		}
		// Keep the exact result within int64.
		limit := new(big.Int).Div(big.NewInt(math.MaxInt64/2), big.NewInt(int64(to)))
		limit.Mul(limit, big.NewInt(int64(from)))
		if !limit.IsInt64() {
			limit.SetInt64(math.MaxInt64 / 2)
		}
		v := rng.Int64N(limit.Int64()) - limit.Int64()/2
		num := new(big.Int).Mul(big.NewInt(v), big.NewInt(int64(to)))
		den := big.NewInt(int64(from))
		down := new(big.Int)
		mod := new(big.Int)
		down.DivMod(num, den, mod) // Euclidean: den > 0, so floor division
		up := new(big.Int).Set(down)
		if mod.Sign() != 0 {
			up.Add(up, big.NewInt(1))
		}
		nearest := new(big.Int).Set(down)
		if new(big.Int).Lsh(mod, 1).Cmp(den) >= 0 {
			nearest.Add(nearest, big.NewInt(1))
		}
		if from == to {
			down.SetInt64(v)
			up.SetInt64(v)
			nearest.SetInt64(v)
		}
		if got := Rescale(v, from, to); got != down.Int64() {
			t.Fatalf("Rescale(%d, %d, %d) = %d, want %s", v, from, to, got, down)
		}
		if got := RescaleUp(v, from, to); got != up.Int64() {
			t.Fatalf("RescaleUp(%d, %d, %d) = %d, want %s", v, from, to, got, up)
		}
		if got := RescaleNearest(v, from, to); got != nearest.Int64() {
			t.Fatalf("RescaleNearest(%d, %d, %d) = %d, want %s", v, from, to, got, nearest)
		}
	}
}

// TestRescaleNearestRoundTrip checks the property the transcoder relies on:
// to a faster clock and back, both to the nearest, returns the same tick.
func TestRescaleNearestRoundTrip(t *testing.T) {
	for _, rate := range []uint32{1000, 8000, 30000, 44100, 48000, 90000} {
		for v := int64(-5000); v <= 5000; v += 7 {
			if got := RescaleNearest(RescaleNearest(v, rate, 90000), 90000, rate); got != v {
				t.Fatalf("rate %d: %d came back as %d", rate, v, got)
			}
		}
	}
}
