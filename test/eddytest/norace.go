//go:build !race

package eddytest

const raceBuild = false
