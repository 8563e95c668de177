"""The synthetic inference probe (`gpulens probe`): v1, v2 and OpenAI probers, phases, OTel spans, exemplars."""
