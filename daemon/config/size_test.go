package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "1048576", want: MiB},
		{in: "64KB", want: 64_000},
		{in: "64KiB", want: 64 * KiB},
		{in: "256MiB", want: 256 * MiB},
		{in: "256 mib", want: 256 * MiB},
		{in: "1GiB", want: GiB},
		{in: "1.5GiB", want: GiB + GiB/2},
		{in: "2TB", want: 2_000_000_000_000},
		{in: "10B", want: 10},
		{in: "", bad: true},
		{in: "MiB", bad: true},
		{in: "-1", bad: true},
		{in: "1.5", bad: true},
		{in: "12 parsecs", bad: true},
		{in: "1.2.3MiB", bad: true},
		{in: "99999999999TiB", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseSize(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestSizeStringRoundTrips(t *testing.T) {
	for _, s := range []Size{0, 1, 1000, 1024, 64 * MiB, 1500 * KiB, 3 * TiB, 64_000, 1_000_001} {
		got, err := ParseSize(s.String())
		if err != nil || got != s {
			t.Errorf("%d -> %q -> %d, %v", int64(s), s.String(), got, err)
		}
	}
	if got := (256 * MiB).String(); got != "256MiB" {
		t.Errorf("String = %q", got)
	}
}

func TestMinFreeBudget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		bytes   Size
		percent float64
	}{
		{"", GiB, 5}, {"auto", GiB, 5}, {"AUTO", GiB, 5},
		{"10%", 0, 10}, {"2.5 %", 0, 2.5}, {"2GiB", 2 * GiB, 0}, {"0", 0, 0}, {"0%", 0, 0},
	} {
		b, p, err := Disk{MinFree: tc.in}.MinFreeBudget()
		if err != nil || b != tc.bytes || p != tc.percent {
			t.Errorf("MinFreeBudget(%q) = %v, %v, %v; want %v, %v", tc.in, b, p, err, tc.bytes, tc.percent)
		}
	}
	for _, in := range []string{"-1%", "100%", "x%", "5 percent", "-3"} {
		if _, _, err := (Disk{MinFree: in}).MinFreeBudget(); err == nil {
			t.Errorf("MinFreeBudget(%q) succeeded", in)
		}
	}
}

func TestReserveSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		auto bool
		size Size
	}{
		{"", true, 0}, {"auto", true, 0}, {"Auto", true, 0}, {"64MiB", false, 64 * MiB}, {"0", false, 0},
	} {
		auto, size, err := Disk{Reserve: tc.in}.ReserveSize()
		if err != nil || auto != tc.auto || size != tc.size {
			t.Errorf("ReserveSize(%q) = %v, %v, %v; want %v, %v", tc.in, auto, size, err, tc.auto, tc.size)
		}
	}
	for _, in := range []string{"-1", "10%", "lots", "64 mebibytes"} {
		if _, _, err := (Disk{Reserve: in}).ReserveSize(); err == nil {
			t.Errorf("ReserveSize(%q) succeeded", in)
		}
	}
}
