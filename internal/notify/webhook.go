package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// SignatureHeader carries the webhook body's HMAC-SHA256 under the
// webhook's secret, as "sha256=" and 64 hex digits.
const SignatureHeader = "X-Kiln-Signature-256"

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is body's under secret, in constant
// time. Receivers do the same (docs/reports.md has it in a few lines).
func Verify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// webhookBody is what a webhook receives: the report and which delivery it
// is (a receiver that sees one delivery twice, docs/reports.md "Exactly
// once?", drops the second).
type webhookBody struct {
	Event    string `json:"event"`
	Delivery int64  `json:"delivery"`
	*Report
}

// permanentError is a refusal that trying again will not change.
type permanentError struct{ error }

// post POSTs the report to url, signed with secret. A 2xx is delivered; a
// 4xx other than 408 and 429 is refused for good; anything else is tried
// again later.
func post(ctx context.Context, client *http.Client, url, secret string, delivery int64, r *Report) error {
	body, err := json.Marshal(webhookBody{Event: "job.ended", Delivery: delivery, Report: r})
	if err != nil {
		return fmt.Errorf("encoding the report of job %d: %w", r.Job, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("webhook %s: %w", url, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kiln-reporter")
	req.Header.Set(SignatureHeader, Sign(secret, body))
	req.Header.Set("X-Kiln-Event", "job.ended")
	req.Header.Set("X-Kiln-Delivery", strconv.FormatInt(delivery, 10))
	req.Header.Set("X-Kiln-Job", strconv.FormatInt(r.Job, 10))
	req.Header.Set("X-Kiln-Bucket", r.Bucket)
	req.Header.Set("X-Kiln-Status", r.Status)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 429:
		return permanentError{fmt.Errorf("webhook %s refused the report: %s", url, resp.Status)}
	default:
		return fmt.Errorf("webhook %s: %s", url, resp.Status)
	}
}
