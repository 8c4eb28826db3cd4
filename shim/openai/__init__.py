"""OpenAI's wire format, pure: requests in (`request`, `edit_inputs`, `multipart`), answers out (`render`)."""
