"""The conversation after the pull request: reviews, answers and checks, and what they ask of asm."""
