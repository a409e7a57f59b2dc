package chromium

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// Reading the page's charts from a DOM dump and a screenshot taken in the
// same load: the page notes on each chart element its plotting area in
// page pixels (data-box) and how many points it drew (data-points).

var (
	boxRe    = regexp.MustCompile(`id="(chart-[a-z-]+)"[^>]*?data-box="(\d+),(\d+),(\d+),(\d+)"`)
	pointsRe = regexp.MustCompile(`id="(chart-[a-z-]+)"[^>]*?data-points="(\d+)"`)
)

// ChartBoxes reads each chart's plotting area (page pixels) from the DOM.
func ChartBoxes(dom string) map[string]image.Rectangle {
	out := map[string]image.Rectangle{}
	for _, m := range boxRe.FindAllStringSubmatch(dom, -1) {
		var v [4]int
		for i := range v {
			v[i], _ = strconv.Atoi(m[2+i])
		}
		out[m[1]] = image.Rect(v[0], v[1], v[0]+v[2], v[1]+v[3])
	}
	return out
}

// ChartPoints is how many points the page says chart id drew
// (data-points).
func ChartPoints(dom, id string) int {
	for _, m := range pointsRe.FindAllStringSubmatch(dom, -1) {
		if m[1] == id {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	return 0
}

// DecodePNG reads the screenshot at path.
func DecodePNG(t testing.TB, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}

// CountColor counts the pixels inside box within a small distance of rgb
// (antialiased edges blend into the background; the cores of lines, dots
// and bars keep the colour).
func CountColor(img image.Image, box image.Rectangle, rgb [3]uint8) int {
	const tol = 28
	n := 0
	box = box.Intersect(img.Bounds())
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if absDiff(c.R, rgb[0]) <= tol && absDiff(c.G, rgb[1]) <= tol && absDiff(c.B, rgb[2]) <= tol {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
