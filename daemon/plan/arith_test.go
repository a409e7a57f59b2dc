package plan

import (
	"math"
	"testing"
)

func TestCatchUp(t *testing.T) {
	for _, c := range []struct {
		name                    string
		restore, age, max, live float64
		want                    float64
	}{
		// 2 s restore, checkpoint 8 s old: 10 s × 1000/s = 10000 readings
		// behind, replayed at 5000 − 1000 = 4000/s: 2.5 s, plus the restore.
		{"backlog", 2, 8, 5000, 1000, 4.5},
		{"no input", 3, 10, 5000, 0, 3},
		{"saturated", 1, 1, 1000, 1000, math.Inf(1)},
		{"overloaded", 1, 1, 900, 1000, math.Inf(1)},
	} {
		if got := CatchUp(c.restore, c.age, c.max, c.live); got != c.want {
			t.Errorf("%s: CatchUp = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestHeadroomRideOutDiskFull(t *testing.T) {
	if got := Headroom(5000, 1000); got != 5 {
		t.Errorf("Headroom = %v", got)
	}
	if !math.IsInf(Headroom(5000, 0), 1) {
		t.Error("Headroom without input is not +Inf")
	}
	if got := RideOut(1000, 200, 8); got != 100 {
		t.Errorf("RideOut = %v", got)
	}
	if got := RideOut(1000, 2000, 8); got != 0 {
		t.Errorf("RideOut over max = %v", got)
	}
	if !math.IsInf(RideOut(1000, 0, 0), 1) {
		t.Error("RideOut without input is not +Inf")
	}
	if got := DiskFull(1<<20, 1024); got != 1024 {
		t.Errorf("DiskFull = %v", got)
	}
	if Finite(math.Inf(1)) != -1 || Finite(3) != 3 {
		t.Error("finite")
	}
}
