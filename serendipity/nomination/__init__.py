"""Nominating the serendipitous cluster: the logged transition prior, every sibling's score, their
combination, and the paired comparison the publish gate makes."""
