package notify_test

import (
	"io"
	"mime"
	"mime/quotedprintable"
)

func qpReader(r io.Reader) io.Reader { return quotedprintable.NewReader(r) }

type mimeDecoder = mime.WordDecoder
