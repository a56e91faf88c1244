"""Peers that anyxp is measured against, each written as its own users would write it."""
