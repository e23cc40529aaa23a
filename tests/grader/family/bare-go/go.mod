module tinybox

go 1.19
