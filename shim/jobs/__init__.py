"""Jobs: one client intent each (`job`), the registry that attaches retries (`registry`), running a job's
submissions (`runner`), and the journal of paid tasks that outlives the process (`journal`, `recovery`)."""
