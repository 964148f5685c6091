"""The people's web app (issue 16): server-rendered pages for coordinators (desk) and peer supporters (phone),
beside the API and on the same use cases. See docs/web-app.md."""
