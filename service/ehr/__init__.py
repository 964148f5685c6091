"""The one client for an EHR's FHIR server: reads, searches with paging, writes and operations, with one token
provider and one 401 policy per site (client.py), the site's connection (connection.py), its token (tokens.py,
smart.py) and the per-site directory the workers share (directory.py).

HTTP, authorization and failures only: what the EHR's JSON means is service/fhir's business, and nothing here
reads the settings (a site's connection arrives as a SiteConnection, or as plain values).
"""
