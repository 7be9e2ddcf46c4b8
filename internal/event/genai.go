package event

// GenAI attribute keys read into typed Span columns. When a column has
// several keys, the first listed wins whatever the order in the span; the
// others stay in span_attributes.
const (
	KeyOperationName     = "gen_ai.operation.name"
	KeyProviderName      = "gen_ai.provider.name"
	KeySystem            = "gen_ai.system" // deprecated for gen_ai.provider.name
	KeyAgentID           = "gen_ai.agent.id"
	KeyAgentName         = "gen_ai.agent.name"
	KeyAgentVersion      = "gen_ai.agent.version"
	KeyToolName          = "gen_ai.tool.name"
	KeyToolCallID        = "gen_ai.tool.call.id"
	KeyToolType          = "gen_ai.tool.type"
	KeyToolCallArguments = "gen_ai.tool.call.arguments"
	KeyToolCallResult    = "gen_ai.tool.call.result"
	KeyRequestModel      = "gen_ai.request.model"
	KeyResponseModel     = "gen_ai.response.model"
	KeyResponseID        = "gen_ai.response.id"
	KeyConversationID    = "gen_ai.conversation.id"
	KeyFinishReasons     = "gen_ai.response.finish_reasons"
	KeyErrorType         = "error.type"

	KeyInputTokens      = "gen_ai.usage.input_tokens"
	KeyPromptTokens     = "gen_ai.usage.prompt_tokens" // deprecated for input_tokens
	KeyOutputTokens     = "gen_ai.usage.output_tokens"
	KeyCompletionTokens = "gen_ai.usage.completion_tokens" // deprecated for output_tokens
	// Registry names (semantic-conventions-genai model/gen-ai/registry.yaml) ...
	KeyCacheReadInputTokens     = "gen_ai.usage.cache_read.input_tokens"
	KeyCacheCreationInputTokens = "gen_ai.usage.cache_creation.input_tokens"
	KeyReasoningOutputTokens    = "gen_ai.usage.reasoning.output_tokens"
	// ... and the underscore spellings instrumentations used before them.
	KeyCacheReadInputTokensAlt     = "gen_ai.usage.cache_read_input_tokens"
	KeyCacheCreationInputTokensAlt = "gen_ai.usage.cache_creation_input_tokens"
	KeyReasoningOutputTokensAlt    = "gen_ai.usage.reasoning_output_tokens"
	KeyReasoningTokens             = "gen_ai.usage.reasoning_tokens"

	// Suffix of the key under which a hashed tool call argument or result is
	// kept when it appears in resource, scope, event or link attributes.
	HashedKeySuffix = ".sha256"
)

// Typed columns fed from attributes.
const (
	colOperation = iota
	colProvider
	colAgentID
	colAgentName
	colAgentVersion
	colToolName
	colToolCallID
	colToolType
	colRequestModel
	colResponseModel
	colResponseID
	colConversationID
	colErrorType
	// string columns end here
	colFinishReasons
	colInput
	colOutput
	colCacheRead
	colCacheCreation
	colReasoning
	// token columns end here
	colToolArgs
	colToolResult
	numCols
)

const (
	lastStringCol = colErrorType
	firstTokenCol = colInput
	lastTokenCol  = colReasoning
)

// genAIField reports the column fed by attribute key k and the key's
// priority for that column (0 wins over 1 over 2), or ok=false.
func genAIField(k string) (col int, prio int8, ok bool) {
	// Fast reject: every mapped key starts with "gen_ai." or is error.type.
	if len(k) < 10 || (k[0] != 'g' && k[0] != 'e') {
		return 0, 0, false
	}
	switch k {
	case KeyOperationName:
		return colOperation, 0, true
	case KeyProviderName:
		return colProvider, 0, true
	case KeySystem:
		return colProvider, 1, true
	case KeyAgentID:
		return colAgentID, 0, true
	case KeyAgentName:
		return colAgentName, 0, true
	case KeyAgentVersion:
		return colAgentVersion, 0, true
	case KeyToolName:
		return colToolName, 0, true
	case KeyToolCallID:
		return colToolCallID, 0, true
	case KeyToolType:
		return colToolType, 0, true
	case KeyRequestModel:
		return colRequestModel, 0, true
	case KeyResponseModel:
		return colResponseModel, 0, true
	case KeyResponseID:
		return colResponseID, 0, true
	case KeyConversationID:
		return colConversationID, 0, true
	case KeyErrorType:
		return colErrorType, 0, true
	case KeyFinishReasons:
		return colFinishReasons, 0, true
	case KeyInputTokens:
		return colInput, 0, true
	case KeyPromptTokens:
		return colInput, 1, true
	case KeyOutputTokens:
		return colOutput, 0, true
	case KeyCompletionTokens:
		return colOutput, 1, true
	case KeyCacheReadInputTokens:
		return colCacheRead, 0, true
	case KeyCacheReadInputTokensAlt:
		return colCacheRead, 1, true
	case KeyCacheCreationInputTokens:
		return colCacheCreation, 0, true
	case KeyCacheCreationInputTokensAlt:
		return colCacheCreation, 1, true
	case KeyReasoningOutputTokens:
		return colReasoning, 0, true
	case KeyReasoningOutputTokensAlt:
		return colReasoning, 1, true
	case KeyReasoningTokens:
		return colReasoning, 2, true
	case KeyToolCallArguments:
		return colToolArgs, 0, true
	case KeyToolCallResult:
		return colToolResult, 0, true
	}
	return 0, 0, false
}

func isToolContentKey(k string) bool {
	return k == KeyToolCallArguments || k == KeyToolCallResult
}

// stringColumn returns the address of the string column col of s.
func stringColumn(s *Span, col int) *string {
	switch col {
	case colOperation:
		return &s.OperationName
	case colProvider:
		return &s.ProviderName
	case colAgentID:
		return &s.AgentID
	case colAgentName:
		return &s.AgentName
	case colAgentVersion:
		return &s.AgentVersion
	case colToolName:
		return &s.ToolName
	case colToolCallID:
		return &s.ToolCallID
	case colToolType:
		return &s.ToolType
	case colRequestModel:
		return &s.RequestModel
	case colResponseModel:
		return &s.ResponseModel
	case colResponseID:
		return &s.ResponseID
	case colConversationID:
		return &s.ConversationID
	case colErrorType:
		return &s.ErrorType
	case colToolArgs:
		return &s.ToolCallArgumentsSHA256
	case colToolResult:
		return &s.ToolCallResultSHA256
	}
	return nil
}

// tokenColumn returns the address of the token column col of s.
func tokenColumn(s *Span, col int) *uint64 {
	switch col {
	case colInput:
		return &s.InputTokens
	case colOutput:
		return &s.OutputTokens
	case colCacheRead:
		return &s.CacheReadInputTokens
	case colCacheCreation:
		return &s.CacheCreationInputTokens
	case colReasoning:
		return &s.ReasoningOutputTokens
	}
	return nil
}
