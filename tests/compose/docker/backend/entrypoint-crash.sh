#!/bin/sh
# A release whose entrypoint crashes before the app starts (a missing secret, a bad build): every
# container of this image exits 1 unless its entrypoint is overridden.
echo "backend ${RELEASE:-?}: cannot start: STRIPE_API_KEY is not set" >&2
exit 1
