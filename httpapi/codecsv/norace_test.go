//go:build !race

package codecsv

const raceEnabled = false
