module mini

go 1.19
