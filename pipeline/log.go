package pipeline

// This file holds NewLogger: the zap logger a pipeline file's log section
// asks for.

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a zap logger writing to standard error as lc says:
// Format "console" (the default) or "json", Level "debug", "info" (the
// default), "warn" or "error".
func NewLogger(lc LogConfig) (*zap.Logger, error) {
	level, enc, err := lc.parse()
	if err != nil {
		return nil, err
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// parse reads lc's level and format, or says which is wrong: NewLogger's
// checks, which Check makes too.
func (lc LogConfig) parse() (zapcore.Level, zapcore.Encoder, error) {
	level := zapcore.InfoLevel
	if lc.Level != "" {
		l, err := zapcore.ParseLevel(lc.Level)
		if err != nil {
			return level, nil, fmt.Errorf("log level %q: want debug, info, warn or error", lc.Level)
		}
		level = l
	}
	switch lc.Format {
	case "", "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		return level, zapcore.NewConsoleEncoder(ec), nil
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		return level, zapcore.NewJSONEncoder(ec), nil
	}
	return level, nil, fmt.Errorf("log format %q: want console or json", lc.Format)
}
