"""Test doubles of telephony providers, shipped so that integrators can test phone
adapters against a real HTTP server on loopback, as the gateway's own tests do."""
