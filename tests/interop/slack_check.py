"""Slack's official Python SDK checks our side of the Slack channel (crates/cli/tests/it/slack.rs).

`sign FILE`: FILE is JSON {"secret", "requests": [{"timestamp", "body"}]}; prints one
`X-Slack-Signature` per request, made by slack_sdk's SignatureVerifier (what Slack sends).
`blocks FILE`: FILE is a JSON list of Block Kit block lists; each must parse with
slack_sdk.models.blocks and round-trip to the same JSON; prints the block types of each.
"""
import json
import sys

from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        data = json.load(f)
    if mode == "sign":
        verifier = SignatureVerifier(signing_secret=data["secret"])
        for r in data["requests"]:
            sig = verifier.generate_signature(timestamp=str(r["timestamp"]), body=r["body"])
            headers = {"x-slack-request-timestamp": str(r["timestamp"]), "x-slack-signature": sig}
            # The SDK's own verifier must accept what it signed (at the request's time).
            verifier.clock.now = lambda ts=int(r["timestamp"]): ts
            assert verifier.is_valid_request(r["body"], headers), "slack_sdk refuses its own signature"
            print(sig)
    elif mode == "blocks":
        for blocks in data:
            parsed = Block.parse_all(blocks)
            for b in parsed:
                b.validate_json()
            back = [b.to_dict() for b in parsed]
            assert back == blocks, f"round trip differs:\n{json.dumps(back)}\n{json.dumps(blocks)}"
            print(",".join(b.type for b in parsed))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
